package bus

import (
	"flag"
	"os"
	"testing"
)

// TestMain raises the default of -test.parallel (GOMAXPROCS) to 8: the
// PostgreSQL tests spend their time waiting for the server (creating their
// databases, backoff, round trips), not on the CPU. An explicit -parallel
// is respected.
func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", "8")
	}
	os.Exit(m.Run())
}
