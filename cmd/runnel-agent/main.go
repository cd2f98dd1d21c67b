// Command runnel-agent is `runnel agent` alone: the agent for the machines
// that run jobs, without the server, the databases and the web UI linked in
// (see internal/agentcmd). Same flags, same RUNNEL_AGENT_* environment.
//
//	runnel-agent --server HOST:9090 --token TOKEN [--labels k=v,…] [--capacity N] [--workdir DIR]
//	runnel-agent version
package main

import (
	"fmt"
	"os"

	"github.com/runnel-ci/runnel/internal/agentcmd"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "version" || os.Args[1] == "--version") {
		fmt.Printf("runnel-agent %s\n", version)
		return
	}
	os.Exit(agentcmd.Main("runnel-agent", os.Args[1:], os.Stdout, os.Stderr, version))
}
