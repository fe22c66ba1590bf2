// Package version holds the tool's version, set at link time by the Makefile.
package version

// Version is the tool version ("dev" in plain `go build`s).
var Version = "dev"
