package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// command is a subcommand of the binary: `omnimemory-metrics <name> [flags]`.
// Without one, the binary serves.
type command struct {
	name, args, summary string
	run                 func(ctx context.Context, args []string, p proc) int
}

func commands() []command {
	return []command{
		{"import", "--from FILE [flags]", "copy the original service's SQLite data into the configured store", runImport},
		{"report", "[--range R] [--url URL] [flags]", "print the savings report of a time range, from the store or a running service", runReport},
	}
}

// runCommand runs the subcommand that args name; ok is false when they name
// none, and the binary serves. help, -h and --help list the subcommands and
// the flags of serving; `help <command>` shows a command's flags.
func runCommand(ctx context.Context, args []string, p proc) (code int, ok bool) {
	if len(args) == 0 {
		return 0, false
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && args[0] == "help" {
			for _, c := range commands() {
				if c.name == args[1] {
					help := p
					help.stderr = p.stdout
					return c.run(ctx, []string{"-h"}, help), true
				}
			}
			fmt.Fprintf(p.stderr, "omnimemory-metrics: unknown command %q\n", args[1])
			return 2, true
		}
		usage(p.stdout, p.getenv)
		return 0, true
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], p), true
		}
	}
	if !strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(p.stderr, "omnimemory-metrics: unknown command %q (run omnimemory-metrics help)\n", args[0])
		return 2, true
	}
	return 0, false
}

// usage writes the list of commands and the flags of serving.
func usage(w io.Writer, getenv func(string) string) {
	lines := [][2]string{{"[flags]", "serve the API (the default)"}}
	for _, c := range commands() {
		lines = append(lines, [2]string{c.name + " " + c.args, c.summary})
	}
	lines = append(lines, [2]string{"help [command]", "this help, or the flags of a command"})
	width := 0
	for _, l := range lines {
		width = max(width, len(l[0]))
	}
	fmt.Fprintf(w, "Usage:\n")
	for _, l := range lines {
		fmt.Fprintf(w, "  omnimemory-metrics %-*s  %s\n", width, l[0], l[1])
	}
	fmt.Fprintf(w, "\nEvery setting is an environment variable and a flag of the same meaning; a flag wins.\nFlags of serving:\n")
	fs := flag.NewFlagSet("omnimemory-metrics", flag.ContinueOnError)
	fs.SetOutput(w)
	settingFlags(fs, getenv)
	fs.PrintDefaults()
}

// commandFlags starts the flag set of a subcommand, its usage text headed by
// how to call it.
func commandFlags(name, args, summary string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("omnimemory-metrics "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: omnimemory-metrics %s %s\n\n%s.\n\nFlags:\n", name, args, strings.ToUpper(summary[:1])+summary[1:])
		fs.PrintDefaults()
	}
	return fs
}

// parseCommand parses a subcommand's arguments, which take no positional
// ones. When it answers false the command ends with the exit code it
// answers: 0 after -h, 2 for a bad command line (reported).
func parseCommand(fs *flag.FlagSet, args []string, stderr io.Writer, name string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		return usageError(stderr, name, fmt.Errorf("unexpected argument %q", fs.Arg(0))), false
	}
	return 0, true
}

// usageError reports a bad command line: one line, exit code 2.
func usageError(stderr io.Writer, name string, err error) int {
	fmt.Fprintf(stderr, "omnimemory-metrics %s: %v\n", name, err)
	return 2
}

// commandLogger is the logger of a subcommand: warnings and errors only, so
// that the stores' routine messages do not mix with its output.
func commandLogger(stderr io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// isTerminal reports whether w is a character device (a terminal), where a
// progress bar may redraw itself.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
