package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/runnel-ci/runnel/internal/action"
	"github.com/runnel-ci/runnel/internal/spec"
)

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quiet := fs.Bool("q", false, "print only errors")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: runnel validate [-q] FILE…\n\nChecks pipeline definitions and prints every problem as file:line:col: message.\nExit status: 0 when all files are valid, 2 otherwise.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitInvalid
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitInvalid
	}
	catalog := action.Builtins()
	code := exitOK
	for _, file := range fs.Args() {
		_, err := spec.ParseFile(file, catalog)
		if err == nil {
			if !*quiet {
				fmt.Fprintf(stdout, "%s: ok\n", file)
			}
			continue
		}
		code = exitInvalid
		printSpecErrors(stderr, err)
	}
	return code
}

func printSpecErrors(w io.Writer, err error) {
	var list spec.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Fprintln(w, e.Error())
		}
		return
	}
	fmt.Fprintln(w, err)
}

func cmdSchema(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintln(stderr, "Usage: runnel schema\n\nPrints the JSON Schema of the pipeline language (for editor completion).")
		return exitInvalid
	}
	b, err := spec.Schema()
	if err != nil {
		fmt.Fprintln(stderr, "runnel schema:", err)
		return exitFailed
	}
	stdout.Write(append(b, '\n'))
	return exitOK
}
