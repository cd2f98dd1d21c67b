// Package testdocker gives tests a Docker Engine and the locally built test
// images. Without a reachable daemon (DOCKER_HOST, or the default socket) the
// test is skipped, unless RUNNEL_TEST_ALL=1 (as in CI), which makes it fail:
// no silent skips in CI.
//
// The images are built by .ci/test-images.sh from Debian's busybox-static,
// with `docker import`: no registry is needed. A test that finds one missing
// runs the script (once per process, serialised across processes by a lock
// file), so `go test` works on a machine where Docker runs but the images were
// never built.
package testdocker

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"
)

// The test images (see .ci/test-images.sh).
const (
	// Busybox has busybox and its applets (sh, wget, httpd, nc, …), no bash,
	// no /etc/os-release, and no entrypoint.
	Busybox = "runnel-test/busybox:1"
	// Plugin is Busybox with an entrypoint that prints "plugin: pwd=DIR" and
	// its PLUGIN_* variables, writes plugin.txt into its working directory
	// and exits with $PLUGIN_EXIT_CODE (default 0).
	Plugin = "runnel-test/plugin:1"
)

// Images lists every test image.
var Images = []string{Busybox, Plugin}

// Connect returns a client of a reachable Docker daemon with the test images
// present, or skips the test (fails it with RUNNEL_TEST_ALL=1).
func Connect(tb testing.TB) *client.Client {
	tb.Helper()
	cli, err := client.New(client.FromEnv)
	if err != nil {
		unavailable(tb, "Docker client: "+err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		cli.Close()
		unavailable(tb, "Docker is not reachable at "+cli.DaemonHost()+": "+err.Error())
	}
	tb.Cleanup(func() { cli.Close() })
	EnsureImages(tb, cli)
	return cli
}

func unavailable(tb testing.TB, msg string) {
	tb.Helper()
	if os.Getenv("RUNNEL_TEST_ALL") == "1" {
		tb.Fatal(msg)
	}
	tb.Skip(msg + " (start dockerd or set DOCKER_HOST, or RUNNEL_TEST_ALL=1 to make this a failure)")
}

var (
	buildMu  sync.Mutex
	buildErr error
	built    bool
)

// EnsureImages builds the test images with .ci/test-images.sh when one is
// missing.
func EnsureImages(tb testing.TB, cli *client.Client) {
	tb.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if built {
		if buildErr != nil {
			tb.Fatal(buildErr)
		}
		return
	}
	buildErr = ensureImages(cli)
	built = true
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
}

func ensureImages(cli *client.Client) error {
	missing := func() (bool, error) {
		for _, img := range Images {
			_, err := cli.ImageInspect(context.Background(), img)
			if cerrdefs.IsNotFound(err) {
				return true, nil
			}
			if err != nil {
				return false, fmt.Errorf("inspect test image %s: %w", img, err)
			}
		}
		return false, nil
	}
	if m, err := missing(); err != nil || !m {
		return err
	}
	script, err := findScript()
	if err != nil {
		return err
	}
	// Test packages run in parallel processes: one builds, the others wait.
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "runnel-test-images.lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	if m, err := missing(); err != nil || !m {
		return err
	}
	out, err := exec.Command("bash", script).CombinedOutput()
	if err != nil {
		return fmt.Errorf("build the test images with %s: %v\n%s", script, err, out)
	}
	if m, err := missing(); err != nil {
		return err
	} else if m {
		return fmt.Errorf("%s ran but the test images are still missing:\n%s", script, out)
	}
	return nil
}

// findScript locates .ci/test-images.sh from the test's directory upwards.
func findScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, ".ci", "test-images.sh")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("test images are missing and .ci/test-images.sh was not found above %s", dir)
		}
		dir = parent
	}
}

// Leftovers lists the containers, networks and volumes labelled with owner
// (and job, when not empty), as "container NAME", "network NAME", "volume NAME".
func Leftovers(tb testing.TB, cli *client.Client, owner, job string) []string {
	tb.Helper()
	f := client.Filters{}.Add("label", "io.runnel.owner="+owner)
	if job != "" {
		f.Add("label", "io.runnel.job="+job)
	}
	ctx := context.Background()
	var out []string
	cs, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		tb.Fatal(err)
	}
	for _, c := range cs.Items {
		out = append(out, fmt.Sprintf("container %v", c.Names))
	}
	ns, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		tb.Fatal(err)
	}
	for _, n := range ns.Items {
		out = append(out, "network "+n.Name)
	}
	vs, err := cli.VolumeList(ctx, client.VolumeListOptions{Filters: f})
	if err != nil {
		tb.Fatal(err)
	}
	for _, v := range vs.Items {
		out = append(out, "volume "+v.Name)
	}
	return out
}
