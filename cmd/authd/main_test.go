package main

import (
	"flag"
	"os"
	"testing"
)

// TestMain raises the default -test.parallel for this package. Its tests run
// whole authd instances against PostgreSQL and spend most of their time
// waiting (for the database, the network, backoff and expiry deadlines),
// not computing: with the default of GOMAXPROCS (2 on CI's machine) the
// package took several minutes of wall time for well under one of CPU.
// An explicit -parallel on the command line still wins.
func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "test.parallel" {
			explicit = true
		}
	})
	if !explicit {
		if err := flag.Set("test.parallel", "8"); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}
