package main

import (
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT: bind() with a
// source address and port 0 then leaves the port to connect(), which picks
// one unique for the whole 4-tuple instead of for the address alone.
const ipBindAddressNoPort = 24

// srcPool spreads outgoing connections over loopback source addresses, so
// that many connections (and the TIME_WAIT entries closed ones leave) do not
// exhaust one address's ephemeral ports (32768-60999 here).
type srcPool struct {
	ips []net.IP
	n   atomic.Uint64
}

// newSrcPool returns count addresses 127.a.b.1.. starting at 127.a.b+? — it
// walks 127.a.X.Y with Y in 1..250 from X = b.
func newSrcPool(a, b byte, count int) *srcPool {
	p := &srcPool{}
	x, y := b, byte(1)
	for range count {
		p.ips = append(p.ips, net.IPv4(127, a, x, y))
		y++
		if y > 250 {
			x, y = x+1, 1
		}
	}
	return p
}

// next returns the next source address, round robin.
func (p *srcPool) next() net.IP { return p.ips[p.n.Add(1)%uint64(len(p.ips))] }

// dialer returns a dialer bound to the next source address.
func (p *srcPool) dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{
		LocalAddr: &net.TCPAddr{IP: p.next()},
		Timeout:   timeout,
		KeepAlive: -1, // as idle agents over loopback: no keepalive probes
		Control: func(network, address string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
}

// freeLoopbackAddr returns a 127.0.0.1 address with a port free right now,
// for a child process's listener flag.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
