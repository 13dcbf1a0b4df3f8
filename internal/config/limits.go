package config

import (
	"fmt"
	"time"
)

// Limits bounds what any peer, before or after it authenticates, can make
// the coordinator hold: connections, handshakes in flight, request and
// frame sizes, and time. It is embedded in Coordinator, so its keys sit at
// the top level of the config file; each has a flag of the same name with
// dashes (max_frame_bytes: --max-frame-bytes). Every refusal names the
// setting that raises it.
type Limits struct {
	// JoinGlobalRate is the join and heal attempts per second allowed from
	// all source addresses together, beside the per-address join_rate.
	JoinGlobalRate float64 `json:"join_global_rate" flag:"join-global-rate"`
	// JoinGlobalBurst is the join and heal attempts allowed in a burst from
	// all source addresses together.
	JoinGlobalBurst int `json:"join_global_burst" flag:"join-global-burst"`

	// MaxRequestBytes bounds a request body on the cluster port, except a
	// job submission's (REQUEST_TOO_LARGE).
	MaxRequestBytes int `json:"max_request_bytes" flag:"max-request-bytes"`
	// MaxJobBytes bounds a job submission's body (JOB_TOO_LARGE).
	MaxJobBytes int `json:"max_job_bytes" flag:"max-job-bytes"`
	// PublicMaxRequestBytes bounds a request body on the public port (join,
	// heal, the web console's forms) and the plaintext listener's
	// authentication frame: what an unauthenticated peer may send.
	PublicMaxRequestBytes int `json:"public_max_request_bytes" flag:"public-max-request-bytes"`
	// MaxHeaderBytes bounds a request's line and headers on both ports
	// (HEADERS_TOO_LARGE).
	MaxHeaderBytes int `json:"max_header_bytes" flag:"max-header-bytes"`

	// ReadHeaderTimeout bounds reading a request's headers, on both ports.
	ReadHeaderTimeout Duration `json:"read_header_timeout" flag:"read-header-timeout"`
	// PublicReadTimeout bounds reading a whole request on the public port.
	PublicReadTimeout Duration `json:"public_read_timeout" flag:"public-read-timeout"`
	// PublicWriteTimeout bounds writing an answer on the public port.
	PublicWriteTimeout Duration `json:"public_write_timeout" flag:"public-write-timeout"`
	// PublicIdleTimeout closes a keep-alive connection idle this long on the
	// public port.
	PublicIdleTimeout Duration `json:"public_idle_timeout" flag:"public-idle-timeout"`
	// ClusterReadTimeout bounds reading a whole API request on the cluster
	// port (agent sessions have heartbeats instead).
	ClusterReadTimeout Duration `json:"cluster_read_timeout" flag:"cluster-read-timeout"`
	// ClusterIdleTimeout closes an API connection idle this long on the
	// cluster port.
	ClusterIdleTimeout Duration `json:"cluster_idle_timeout" flag:"cluster-idle-timeout"`
	// HandshakeTimeout bounds a TLS handshake (and the plaintext listener's
	// greeting) on every listener.
	HandshakeTimeout Duration `json:"handshake_timeout" flag:"handshake-timeout"`

	// PublicMaxConns caps open connections on the public port, where no
	// peer is authenticated. At a cap, a new connection takes the place of
	// one in the same scope (total or per source) that holds its slot
	// without using it (an idle keep-alive connection, a handshake whose
	// peer never sent a byte or stalled), so idle connections cannot
	// starve new ones; only when all are working is the new one refused.
	PublicMaxConns int `json:"public_max_conns" flag:"public-max-conns"`
	// PublicMaxConnsPerSource caps open connections on the public port from
	// one source address (an IPv6 /64 counts as one).
	PublicMaxConnsPerSource int `json:"public_max_conns_per_source" flag:"public-max-conns-per-source"`
	// PublicMaxHandshakes caps TLS handshakes in flight on the public port;
	// at the cap a handshake whose peer never sent a byte, or stalled for
	// over a second, makes room for the new one.
	PublicMaxHandshakes int `json:"public_max_handshakes" flag:"public-max-handshakes"`
	// PublicMaxHandshakesPerSource caps TLS handshakes in flight on the
	// public port from one source address.
	PublicMaxHandshakesPerSource int `json:"public_max_handshakes_per_source" flag:"public-max-handshakes-per-source"`
	// ClusterMaxHandshakes caps TLS handshakes in flight on the cluster port
	// (and greetings on the plaintext listener), where a peer is
	// unauthenticated until its handshake ends.
	ClusterMaxHandshakes int `json:"cluster_max_handshakes" flag:"cluster-max-handshakes"`
	// ClusterMaxHandshakesPerSource caps TLS handshakes in flight on the
	// cluster (and plaintext) port from one source address.
	ClusterMaxHandshakesPerSource int `json:"cluster_max_handshakes_per_source" flag:"cluster-max-handshakes-per-source"`

	// MaxFrameBytes bounds one agent session frame the coordinator reads
	// (FRAME_TOO_LARGE ends the session).
	MaxFrameBytes int `json:"max_frame_bytes" flag:"max-frame-bytes"`
	// SessionQueueBytes caps the bytes queued for one agent session: frames
	// waiting to be sent to it (over the cap, the session is closed:
	// SESSION_QUEUE_FULL), and its task output waiting to be stored (over
	// the cap, the coordinator stops reading from it until the store
	// catches up).
	SessionQueueBytes int `json:"session_queue_bytes" flag:"session-queue-bytes"`
}

// MaxFrameLimit is the largest MaxFrameBytes: the agent protocol's own
// bound on a frame (api.MaxFrame, which config does not import).
const MaxFrameLimit = 16 << 20

// LimitsDefaults returns the documented defaults.
func LimitsDefaults() Limits {
	return Limits{
		JoinGlobalRate:                100,
		JoinGlobalBurst:               500,
		MaxRequestBytes:               1 << 20,
		MaxJobBytes:                   2 << 20,
		PublicMaxRequestBytes:         64 << 10,
		MaxHeaderBytes:                32 << 10,
		ReadHeaderTimeout:             Duration(10 * time.Second),
		PublicReadTimeout:             Duration(30 * time.Second),
		PublicWriteTimeout:            Duration(60 * time.Second),
		PublicIdleTimeout:             Duration(30 * time.Second),
		ClusterReadTimeout:            Duration(2 * time.Minute),
		ClusterIdleTimeout:            Duration(5 * time.Minute),
		HandshakeTimeout:              Duration(10 * time.Second),
		PublicMaxConns:                1024,
		PublicMaxConnsPerSource:       128,
		PublicMaxHandshakes:           256,
		PublicMaxHandshakesPerSource:  64,
		ClusterMaxHandshakes:          2048,
		ClusterMaxHandshakesPerSource: 1024,
		MaxFrameBytes:                 MaxFrameLimit,
		SessionQueueBytes:             64 << 20,
	}
}

// validate adds a problem for every limit out of its range.
func (l *Limits) validate(p *Problems) {
	if l.JoinGlobalRate <= 0 || l.JoinGlobalBurst < 1 {
		p.Addf("join_global_rate/join_global_burst (--join-global-rate, --join-global-burst)", "must be positive")
	}
	type intRange struct {
		key      string
		v        int
		min, max int
	}
	for _, r := range []intRange{
		{"max_request_bytes", l.MaxRequestBytes, 4 << 10, 1 << 30},
		{"max_job_bytes", l.MaxJobBytes, 4 << 10, 1 << 30},
		{"public_max_request_bytes", l.PublicMaxRequestBytes, 4 << 10, 16 << 20},
		{"max_header_bytes", l.MaxHeaderBytes, 4 << 10, 1 << 20},
		{"public_max_conns", l.PublicMaxConns, 16, 1 << 20},
		{"public_max_conns_per_source", l.PublicMaxConnsPerSource, 1, 1 << 20},
		{"public_max_handshakes", l.PublicMaxHandshakes, 16, 1 << 20},
		{"public_max_handshakes_per_source", l.PublicMaxHandshakesPerSource, 1, 1 << 20},
		{"cluster_max_handshakes", l.ClusterMaxHandshakes, 16, 1 << 20},
		{"cluster_max_handshakes_per_source", l.ClusterMaxHandshakesPerSource, 1, 1 << 20},
		// An agent sends output in frames of up to about 1.4 MB.
		{"max_frame_bytes", l.MaxFrameBytes, 2 << 20, MaxFrameLimit},
		{"session_queue_bytes", l.SessionQueueBytes, 4 << 20, 1 << 34},
	} {
		if r.v < r.min || r.v > r.max {
			p.Addf(flagged(r.key), "%d is out of range: use %d to %d", r.v, r.min, r.max)
		}
	}
	if l.PublicMaxConnsPerSource > l.PublicMaxConns {
		p.Addf(flagged("public_max_conns_per_source"), "%d is over public_max_conns (%d)", l.PublicMaxConnsPerSource, l.PublicMaxConns)
	}
	if l.PublicMaxHandshakes > l.PublicMaxConns {
		p.Addf(flagged("public_max_handshakes"), "%d is over public_max_conns (%d): every handshake is a connection", l.PublicMaxHandshakes, l.PublicMaxConns)
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{
		{"read_header_timeout", l.ReadHeaderTimeout}, {"public_read_timeout", l.PublicReadTimeout},
		{"public_write_timeout", l.PublicWriteTimeout}, {"public_idle_timeout", l.PublicIdleTimeout},
		{"cluster_read_timeout", l.ClusterReadTimeout}, {"cluster_idle_timeout", l.ClusterIdleTimeout},
		{"handshake_timeout", l.HandshakeTimeout},
	} {
		if d.v.D() < 100*time.Millisecond || d.v.D() > time.Hour {
			p.Addf(flagged(d.key), "%s is out of range: use 100ms to 1h", d.v.D())
		}
	}
}

// flagged names a key with its flag: "max_frame_bytes (--max-frame-bytes)".
func flagged(key string) string {
	flag := []byte(key)
	for i, c := range flag {
		if c == '_' {
			flag[i] = '-'
		}
	}
	return fmt.Sprintf("%s (--%s)", key, flag)
}
