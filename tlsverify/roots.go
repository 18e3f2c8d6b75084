package tlsverify

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
)

// maxRootsFile bounds how much of a roots file is read: far above any real
// CA bundle (the Mozilla one is about 220 KB), small enough to be harmless.
const maxRootsFile = 16 << 20

// LoadRoots reads a PEM bundle of CA certificates into a new pool. It fails
// when the file holds no certificate or a certificate that does not parse,
// so a wrong file (a key, a DER certificate) is caught at set-up.
func LoadRoots(path string) (*x509.CertPool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: roots file: %w", ErrInvalidConfig, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRootsFile+1))
	if err != nil {
		return nil, fmt.Errorf("%w: roots file: %w", ErrInvalidConfig, err)
	}
	if len(data) > maxRootsFile {
		return nil, fmt.Errorf("%w: roots file %s is larger than %d bytes", ErrInvalidConfig, path, maxRootsFile)
	}
	pool, n, err := parseRoots(data)
	if err != nil {
		return nil, fmt.Errorf("%w: roots file %s: %w", ErrInvalidConfig, path, err)
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: roots file %s holds no PEM CERTIFICATE block", ErrInvalidConfig, path)
	}
	return pool, nil
}

func parseRoots(data []byte) (*x509.CertPool, int, error) {
	pool := x509.NewCertPool()
	n := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return pool, n, nil
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, 0, fmt.Errorf("certificate %d: %w", n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
}
