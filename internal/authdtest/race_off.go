//go:build !race

package authdtest

const raceEnabled = false
