package tlsverify_test

import (
	"encoding/base64"
	"fmt"
	"strings"
)

func base64Decode(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }

func hexColons(b []byte) string {
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02x", x)
	}
	return strings.Join(parts, ":")
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
