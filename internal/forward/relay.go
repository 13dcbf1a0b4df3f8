package forward

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Preamble opens a relayed agent session: the follower sends it to the
// leader first, then the agent's bytes follow unchanged both ways.
type Preamble struct {
	// Chain is the agent's certificate chain (DER, leaf first), as the
	// follower's handshake verified it; the leader verifies it again.
	Chain [][]byte `json:"chain"`
	// Source is the agent's address as the follower saw it.
	Source string `json:"source"`
	// TLSVersion and Cipher are of the agent's link to the follower.
	TLSVersion uint16 `json:"tls_version"`
	Cipher     uint16 `json:"cipher"`
	// By is the follower's coordinator ID: where the agent is connected.
	By string `json:"by"`
}

// maxPreamble bounds a preamble (a certificate chain and a few fields).
const maxPreamble = 256 << 10

// NewPreamble describes an agent connection the follower accepted.
func NewPreamble(cs tls.ConnectionState, source, by string) Preamble {
	p := Preamble{Source: source, TLSVersion: cs.Version, Cipher: cs.CipherSuite, By: by}
	for _, c := range cs.PeerCertificates {
		p.Chain = append(p.Chain, c.Raw)
	}
	return p
}

// Certificates parses the chain.
func (p Preamble) Certificates() ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, der := range p.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("relayed agent certificate: %w", err)
		}
		out = append(out, c)
	}
	return out, nil
}

// WritePreamble sends p: a 4-byte big-endian length, then JSON.
func WritePreamble(w io.Writer, p Preamble) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	buf := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(b)), uint32(len(b)))
	_, err = w.Write(append(buf, b...))
	return err
}

// ReadPreamble reads what WritePreamble sent.
func ReadPreamble(r io.Reader) (Preamble, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return Preamble{}, fmt.Errorf("read the relay preamble: %w", err)
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxPreamble {
		return Preamble{}, fmt.Errorf("relay preamble of %d bytes is over the limit of %d", size, maxPreamble)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return Preamble{}, fmt.Errorf("read the relay preamble: %w", err)
	}
	var p Preamble
	if err := json.Unmarshal(b, &p); err != nil {
		return Preamble{}, fmt.Errorf("relay preamble: %w", err)
	}
	if len(p.Chain) == 0 {
		return Preamble{}, errors.New("relay preamble carries no agent certificate")
	}
	return p, nil
}
