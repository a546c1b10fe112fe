package store

// The single-statement fast paths, for tests that must know they ran
// (the public methods fall back to a transaction when they decline).
var (
	RotateFast = (*Postgres).rotateFast
	RedeemFast = (*Postgres).redeemFast
)
