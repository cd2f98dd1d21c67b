// Command runnel is the Runnel CI/CD engine: run a pipeline locally (exec),
// check definitions (validate), print the language's JSON Schema (schema).
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/runnel-ci/runnel/internal/agentcmd"
)

// Exit codes shared by the subcommands.
const (
	exitOK      = 0
	exitFailed  = 1
	exitInvalid = 2
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `runnel — a self-hosted CI/CD engine

Usage:
  runnel server [--addr 127.0.0.1:8080] [--data-dir ./runnel-data] [--database postgres://…]
                              run the control plane: HTTP API, scheduler, in-process agent
  runnel agent --server HOST:PORT --token TOKEN [--labels k=v,…] [--capacity N] [--workdir DIR]
                              run jobs for a server on this machine (remote agent)
  runnel exec [-f FILE] [--var k=v]… [--env K=V]… [--workdir DIR] [--json]
                              run a pipeline on this machine, no server needed
  runnel validate FILE…       check definitions; prints file:line:col: message
  runnel login --server URL   sign this machine's command line in through the web UI (single sign-on)
  runnel whoami [--server URL]
                              who the stored sign-in is
  runnel schema               print the JSON Schema of the pipeline language
  runnel version              print the version

Run "runnel COMMAND -h" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitInvalid
	}
	switch args[0] {
	case "server":
		return cmdServer(args[1:], stdout, stderr)
	case "agent":
		return agentcmd.Main("runnel agent", args[1:], stdout, stderr, version)
	case "exec":
		return cmdExec(args[1:], stdout, stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "schema":
		return cmdSchema(args[1:], stdout, stderr)
	case "login":
		return cmdLogin(args[1:], stdout, stderr)
	case "whoami":
		return cmdWhoami(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "runnel %s\n", version)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "runnel: unknown command %q\n\n%s", args[0], usage)
		return exitInvalid
	}
}
