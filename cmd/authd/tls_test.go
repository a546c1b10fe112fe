package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestServeTLSAndHealthcheck: with tls.cert_file and tls.key_file authd
// serves HTTPS itself (plain HTTP is not answered), and `authd healthcheck`
// probes it over HTTPS from the environment alone, as the container's
// HEALTHCHECK does.
func TestServeTLSAndHealthcheck(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := selfSignedCert(t, "auth.example.com")
	addr := freeAddr(t)
	env := map[string]string{
		"AUTHD_LISTEN": addr, "AUTHD_ISSUER": "https://auth.example.com",
		"AUTHD_TLS_CERT_FILE": certFile, "AUTHD_TLS_KEY_FILE": keyFile,
	}
	inst := startAuthd(t, addr, env, "--dev")

	// The server speaks TLS with the configured certificate.
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, ServerName: "auth.example.com",
	}}}
	resp, err := c.Get("https://" + addr + "/health")
	if err != nil {
		t.Fatalf("https /health: %v\n%s", err, inst.Logs.String())
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("https /health: %d", resp.StatusCode)
	}
	if resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + addr + "/health"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain http answered 200 on the TLS listener")
		}
	}

	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"healthcheck"}, envOf(map[string]string{
		"AUTHD_LISTEN": addr, "AUTHD_TLS_CERT_FILE": certFile,
	}), &out, &errOut); err != nil {
		t.Fatalf("healthcheck against the TLS listener: %v %s", err, errOut.String())
	}
	// Without the TLS setting it probes plain http and fails.
	if err := run(context.Background(), []string{"healthcheck"}, envOf(map[string]string{"AUTHD_LISTEN": addr}), &out, &errOut); err == nil {
		t.Fatal("plain-http healthcheck passed against a TLS listener")
	}
}

// selfSignedCert writes a certificate for host (and 127.0.0.1) and its key,
// returning their paths and a pool that trusts the certificate.
func selfSignedCert(t *testing.T, host string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{host}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
