package token_test

import "testing"

// TestShared runs the tests that need nothing but the default
// configuration and change no shared state (clock, users, clients) on one
// endpoint and database, in parallel: a database per test would cost more
// than the tests themselves. Each test uses its own codes and tokens.
func TestShared(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for name, test := range map[string]func(*testing.T, *env){
		"ClientCredentials":                testClientCredentials,
		"ClientCredentialsRejections":      testClientCredentialsRejections,
		"ClientCredentialsSingleResource":  testClientCredentialsSingleAllowedResource,
		"AuthorizationCode":                testAuthorizationCode,
		"AuthorizationCodeResponseHeaders": testAuthorizationCodeResponseHeaders,
		"Preflight":                        testPreflight,
		"AuthorizationCodeRejections":      testAuthorizationCodeRejections,
		"NonFormBody":                      testNonFormBody,
		"RedirectURIOptional":              testRedirectURIOptional,
		"NoRefreshTokenUnlessRegistered":   testNoRefreshTokenUnlessRegistered,
		"Audience":                         testAudience,
		"CodeReplayRevokesGrant":           testCodeReplayRevokesGrant,
		"InvalidReplayDoesNotRevoke":       testInvalidReplayDoesNotRevoke,
		"ConcurrentCodeRedemption":         testConcurrentCodeRedemption,
		"RefreshConfidentialPost":          testRefreshConfidentialPost,
		"RefreshScopeAndResource":          testRefreshScopeAndResource,
		"RefreshRejections":                testRefreshRejections,
		"ConcurrentRefresh":                testConcurrentRefresh,
		"RevokeRefreshToken":               testRevokeRefreshToken,
		"RevokeAccessTokens":               testRevokeAccessTokens,
		"RevokeRejections":                 testRevokeRejections,
		"NoSecretsInLogs":                  testNoSecretsInLogs,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, e.sub(t))
		})
	}
}
