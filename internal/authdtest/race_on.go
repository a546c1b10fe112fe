//go:build race

package authdtest

// raceEnabled: the tests run with -race, so the binary is built with it
// too (it then reuses the race-built packages the test build compiled).
const raceEnabled = true
