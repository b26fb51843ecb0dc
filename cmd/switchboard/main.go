// Command switchboard runs, inspects and calls Switchboard services: see
// `switchboard --help`. All of its logic lives in package cli.
package main

import (
	"os"

	"github.com/switchboard-dev/switchboard/cli"
)

func main() { os.Exit(cli.Main()) }
