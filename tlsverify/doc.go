// Package tlsverify checks an XMPP server's certificate the way a Call Bridge
// needs it checked: a chain to a trusted root, and DNS SANs (RFC 6125) that
// name both the XMPP domain and the server's FQDN, with errors that say
// exactly which name is missing.
//
// Cisco Meeting Server's Call Bridge refuses an XMPP server whose
// certificate lacks either name (step 8 of the connection sequence). A
// certificate that names only the server, or carries the domain only in its
// subject CN, is the usual mistake; this package reports it in one line an
// operator can act on:
//
//	tlsverify: certificate of xmpp1.example.com lacks SAN "example.com" (XMPP domain); it names DNS:[xmpp1.example.com] (CN "example.com" is ignored: only SANs count)
//
// # Use
//
//	cfg := tlsverify.Config{
//		Domain:     "example.com",       // the XMPP domain
//		ServerName: "xmpp1.example.com", // SRV target, configured host, or override
//		RootsFile:  "/etc/cblink/ca.pem", // nil Roots and no file: system pool
//	}
//	tlsConf, err := cfg.TLSConfig("") // SNI defaults to the XMPP domain
//	...
//	conn := tls.Client(rawConn, tlsConf)
//	err = conn.HandshakeContext(ctx)
//	var ne *tlsverify.NameError
//	if errors.As(err, &ne) { /* ne.Missing, ne.DNSNames, ne.CommonName */ }
//
// Config.Verify checks a chain directly, for tools that fetched it
// themselves; Summarize describes a certificate for printing.
//
// # What is checked
//
//   - The chain reaches a trusted root (Config.Roots, a PEM bundle in
//     Config.RootsFile, or the system pool), using the intermediates the
//     server sent. Missing intermediates are not fetched.
//   - Every certificate in it is within its validity dates at Config.Now.
//   - The chain allows TLS server authentication (extended key usage).
//   - The leaf's SANs cover the names Config.Policy requires: by default the
//     XMPP domain and the server name. Matching follows RFC 6125 section 6.4:
//     ASCII case-insensitive, a trailing dot ignored, IDNs compared as
//     A-labels, a wildcard "*" standing for exactly one whole left-most label
//     and never honoured over a single label or an ICANN public suffix
//     ("*.com", "*.co.uk"). The subject CN is never used. A server name that
//     is an IP address matches only an IP SAN.
//   - Optionally, SHA-256 SPKI pins act as extra trust anchors, or as the
//     only ones (Config.PinOnly).
//
// No revocation checking (CRL, OCSP) is done.
//
// # Errors
//
// Failures are a *NameError or a *ChainError. Both match sentinels with
// errors.Is (ErrNameMismatch, ErrExpired, ErrNotYetValid,
// ErrUnknownAuthority, ErrKeyUsage, ErrPinMismatch, ErrInvalidChain) and
// carry the certificate and details for errors.As. A Config that cannot
// work gives an error matching ErrInvalidConfig.
//
// # Single combined servers
//
// A Call Bridge configured with "localhost:5223" dials a name that is not in
// the server's certificate. Set ServerName to the FQDN the certificate does
// carry; the address dialled plays no part in verification.
package tlsverify
