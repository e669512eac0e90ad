// Command omnimemory-load drives load against omnimemory-metrics and
// measures it. Subcommands:
//
//	bench   build the service, start it on the embedded store, on a real
//	        InfluxDB 1.8.3 and on a real PostgreSQL 15, run every phase
//	        (single-operation ingest, batch ingest, aggregate queries) beside
//	        its reference (a bare net/http handler, InfluxDB's own
//	        line-protocol writes, PostgreSQL's COPY into a plain table, plain
//	        SQL over the raw rows), sample the memory of the service and of
//	        its database server, and print a Markdown table
//	ingest  POST operations to a running service and summarise the rate
//	query   GET every range of both aggregate endpoints of a running service
//
// All traffic goes to loopback addresses only; every phase is bounded in
// requests and time; every child process is killed on exit, error or Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// envRole names the environment variable that makes a child of this program
// (or of its test binary) serve as a helper process instead of running a
// subcommand: "bare-server" is the only role.
const envRole = "OMNIMEMORY_LOAD_ROLE"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: omnimemory-load <command> [flags]

commands:
  bench    build the service and benchmark it on every store; prints a Markdown table
  ingest   POST operations to a running service (--url) and summarise the rate
  query    GET the aggregate endpoints of a running service (--url) and summarise latency

Run "omnimemory-load <command> --help" for its flags.
`

// run dispatches to a subcommand and answers the exit code: 0 on success, 2
// for bad usage, 1 for any other failure.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if os.Getenv(envRole) == "bare-server" {
		args = append([]string{"bare-server"}, args...)
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "bench":
		err = benchCommand(ctx, args[1:], stdout, stderr)
	case "ingest":
		err = ingestCommand(ctx, args[1:], stdout, stderr)
	case "query":
		err = queryCommand(ctx, args[1:], stdout, stderr)
	case "bare-server":
		err = bareServerCommand(ctx, args[1:], stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "omnimemory-load: unknown command %q\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "omnimemory-load %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "omnimemory-load %s: %v\n", args[0], err)
		return 1
	}
}

// usageError is a bad flag or argument.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }
