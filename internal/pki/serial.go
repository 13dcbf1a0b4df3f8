package pki

import (
	"fmt"
	"math/big"
	"strings"
)

// maxSerialBytes is RFC 5280's bound on a serial number (20 octets).
const maxSerialBytes = 20

// ParseSerial reads a certificate serial number in the forms people copy
// it in: Ward's lower-case hex, or as openssl prints it, with leading
// zeros, colons or spaces between bytes, either case, an optional "0x",
// "serial=" (`openssl x509 -serial`) or "4660 (0x1234)" (`openssl x509
// -text` for a short serial). SerialString formats the result the way Ward
// shows it.
func ParseSerial(s string) (*big.Int, error) {
	in := strings.TrimSpace(s)
	if i := strings.Index(in, "(0x"); i >= 0 && strings.HasSuffix(in, ")") {
		in = in[i+1 : len(in)-1]
	}
	lower := strings.ToLower(in)
	lower = strings.TrimPrefix(lower, "serial=")
	lower = strings.TrimPrefix(lower, "0x")
	var hex strings.Builder
	for i, r := range lower {
		switch {
		case r == ':' || r == ' ' || r == '-':
		case r >= '0' && r <= '9', r >= 'a' && r <= 'f':
			hex.WriteRune(r)
		default:
			return nil, fmt.Errorf("serial %q: character %q at position %d is not a hex digit (give the serial as `ward cert ls` or `openssl x509 -serial` prints it)", s, r, i+1)
		}
	}
	if hex.Len() == 0 {
		return nil, fmt.Errorf("serial %q has no hex digits", s)
	}
	n, ok := new(big.Int).SetString(hex.String(), 16)
	if !ok {
		return nil, fmt.Errorf("serial %q is not a hex number", s)
	}
	if n.Sign() == 0 {
		return nil, fmt.Errorf("serial %q is zero; no certificate has it", s)
	}
	if len(n.Bytes()) > maxSerialBytes {
		return nil, fmt.Errorf("serial %q is %d bytes long; serials are at most %d", s, len(n.Bytes()), maxSerialBytes)
	}
	return n, nil
}

// SerialString formats a serial as lower-case hex without leading zeros,
// the form of SerialHex.
func SerialString(n *big.Int) string { return fmt.Sprintf("%x", n) }
