package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/enroll"
	"github.com/wardcluster/ward/internal/pki"
)

// The scale-ha scenario holds more simulated agents than one process may
// open files for, so they live in several child processes of the bench
// (this binary, run as `bench sim-child`), each under the open-files
// limit. The parent talks to a child over its stdin and stdout, one JSON
// object a line: first a simChildConfig, then simChildCommands, each
// answered by one simChildReply. EOF on stdin closes every session.

// simChildArg is the first argument that runs this binary as a child.
const simChildArg = "sim-child"

// simChildConfig is what a child simulates.
type simChildConfig struct {
	Index        int      `json:"index"`
	Cluster      string   `json:"cluster"`
	Pin          string   `json:"pin"`
	Public       string   `json:"public"`       // where agents join (a coordinator's public address)
	Coordinators []string `json:"coordinators"` // cluster addresses: agents of group i connect to Coordinators[i]
	Tokens       []string `json:"tokens"`       // join strings, used round robin
	JoinC        int      `json:"join_c"`
	ConnC        int      `json:"conn_c"`
	SrcIPs       int      `json:"src_ips"`
	MinFreeMB    int64    `json:"min_free_mb"` // stop joining when MemAvailable falls below
}

// simChildCommand asks for more agents (Grow[i] more connected to
// Coordinators[i]) or for the counters.
type simChildCommand struct {
	Grow []int `json:"grow,omitempty"`
}

// simChildReply answers a command.
type simChildReply struct {
	Joined      int     `json:"joined"`
	JoinSeconds float64 `json:"join_s"`
	ConnSeconds float64 `json:"conn_s"`
	JoinRetries int64   `json:"join_retries"`
	Failed      int     `json:"failed"`
	FirstError  string  `json:"first_error,omitempty"`
	HelloUS     []int64 `json:"hello_us"` // Hello→Welcome latencies of this grow, µs, sorted
	Live        []int64 `json:"live"`     // live sessions per coordinator
	Ended       int64   `json:"ended"`
	Heartbeats  int64   `json:"heartbeats"`
	RSSKB       int64   `json:"rss_kb"`
	Limit       uint64  `json:"nofile"`
	Stopped     string  `json:"stopped,omitempty"` // why this grow stopped short
	Error       string  `json:"error,omitempty"`
}

// runSimChild is main for a child.
func runSimChild() int {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	out := json.NewEncoder(os.Stdout)
	if !in.Scan() {
		fmt.Fprintln(os.Stderr, "sim-child: no configuration on stdin")
		return 2
	}
	var cfg simChildConfig
	if err := json.Unmarshal(in.Bytes(), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "sim-child: configuration:", err)
		return 2
	}
	limit, _ := raiseNofile(1 << 20)
	pin, err := pki.ParsePin(cfg.Pin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sim-child:", err)
		return 2
	}
	var tokens []enroll.JoinString
	for _, t := range cfg.Tokens {
		js, err := enroll.ParseJoinString(t)
		if err != nil {
			fmt.Fprintln(os.Stderr, "sim-child:", err)
			return 2
		}
		tokens = append(tokens, js)
	}
	ctx := context.Background()
	// One source address range per child: 127.1.(16+index).1...
	src := newSrcPool(1, byte(16+cfg.Index), cfg.SrcIPs)
	fleets := make([]*simFleet, len(cfg.Coordinators))
	for i, addr := range cfg.Coordinators {
		fleets[i] = newSimFleet(cfg.Cluster, addr, cfg.Public, pin, src)
		if i == 0 {
			fleets[i].reuseJoinConns(cfg.JoinC)
		} else {
			fleets[i].joinHTTP = fleets[0].joinHTTP // one pool of join connections
		}
	}
	defer func() {
		for _, f := range fleets {
			f.stop()
		}
	}()
	var seq atomic.Int64
	for in.Scan() {
		var cmd simChildCommand
		if err := json.Unmarshal(in.Bytes(), &cmd); err != nil {
			out.Encode(simChildReply{Error: err.Error()})
			continue
		}
		rep := simChildReply{Limit: limit}
		if len(cmd.Grow) > 0 {
			rep = growChild(ctx, cfg, fleets, tokens, cmd.Grow, &seq)
			rep.Limit = limit
		}
		for _, f := range fleets {
			rep.Live = append(rep.Live, f.live.Load())
			rep.Ended += f.ended.Load()
			rep.Heartbeats += f.heartbeats.Load()
		}
		if st, err := readProcStatus(os.Getpid()); err == nil {
			rep.RSSKB = st["VmRSS"]
		}
		if err := out.Encode(rep); err != nil {
			return 1
		}
	}
	return 0
}

// growChild joins and connects grow[i] more agents to coordinator i.
func growChild(ctx context.Context, cfg simChildConfig, fleets []*simFleet, tokens []enroll.JoinString, grow []int, seq *atomic.Int64) simChildReply {
	var rep simChildReply
	type job struct{ fleet int }
	var jobs []job
	for i, n := range grow {
		for range n {
			jobs = append(jobs, job{i})
		}
	}
	agents := make([]*simAgent, len(jobs))
	var firstErr atomic.Value
	var failed atomic.Int64
	t0 := time.Now()
	err := parallel(ctx, len(jobs), cfg.JoinC, func(i int) error {
		if i%128 == 0 {
			if avail := memAvailableMB(); avail >= 0 && avail < cfg.MinFreeMB {
				return errBudget{fmt.Sprintf("MemAvailable fell to %d MB (-scale-min-free-mb %d)", avail, cfg.MinFreeMB)}
			}
		}
		k := seq.Add(1)
		f := fleets[jobs[i].fleet]
		a, err := f.join(ctx, fmt.Sprintf("h%02d-%06d", cfg.Index, k), tokens[int(k)%len(tokens)])
		var ae *api.Error
		for try := 0; err != nil && !errors.As(err, &ae) && try < 3; try++ {
			// A connection the server closed as it was reused, or
			// refused: an agent tries its join again.
			f.joinRetries.Add(1)
			time.Sleep(time.Duration(50*(try+1)) * time.Millisecond)
			a, err = f.join(ctx, fmt.Sprintf("h%02d-%06d", cfg.Index, k), tokens[int(k)%len(tokens)])
		}
		if err != nil {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
			return nil
		}
		agents[i] = a
		return nil
	})
	rep.JoinSeconds = time.Since(t0).Seconds()
	// The coordinator's descriptors are for sessions: let the join
	// connections go before the sessions open.
	fleets[0].joinHTTP.CloseIdleConnections()
	if err != nil {
		rep.Stopped = err.Error()
	}
	for _, f := range fleets {
		rep.JoinRetries += f.joinRetries.Swap(0)
	}
	t1 := time.Now()
	parallel(ctx, len(jobs), cfg.ConnC, func(i int) error {
		a := agents[i]
		if a == nil {
			return nil
		}
		f := fleets[jobs[i].fleet]
		if err := f.connect(ctx, a); err != nil {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
			return nil
		}
		f.add(a)
		return nil
	})
	rep.ConnSeconds = time.Since(t1).Seconds()
	for _, a := range agents {
		if a != nil {
			rep.Joined++
		}
	}
	var lat []time.Duration
	for _, f := range fleets {
		lat = append(lat, f.takeHelloLat()...)
	}
	slices.Sort(lat)
	for _, l := range lat {
		rep.HelloUS = append(rep.HelloUS, l.Microseconds())
	}
	rep.Failed = int(failed.Load())
	if v := firstErr.Load(); v != nil {
		rep.FirstError = v.(string)
	}
	return rep
}

// reuseJoinConns lets joins share up to n kept-alive connections to the
// public port (a bench shortcut: a real agent's first start makes one
// connection for its join; the join itself, key, CSR and certificate, is
// the real one).
func (f *simFleet) reuseJoinConns(n int) {
	tr := f.joinHTTP.Transport.(*http.Transport).Clone()
	tr.DisableKeepAlives = false
	tr.MaxIdleConnsPerHost = n
	tr.MaxConnsPerHost = n
	src := f.src
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return src.dialer(10*time.Second).DialContext(ctx, network, addr)
	}
	f.joinHTTP = &http.Client{Transport: tr, Timeout: f.joinHTTP.Timeout}
}

// simChild is the parent's handle on a child process.
type simChild struct {
	in  io.WriteCloser
	out *bufio.Scanner
	pid int
	cmd interface{ Wait() error }
}

// ask sends one command and reads its reply.
func (c *simChild) ask(cmd simChildCommand) (simChildReply, error) {
	b, _ := json.Marshal(cmd)
	if _, err := c.in.Write(append(b, '\n')); err != nil {
		return simChildReply{}, fmt.Errorf("simulator process %d: %w", c.pid, err)
	}
	if !c.out.Scan() {
		return simChildReply{}, fmt.Errorf("simulator process %d ended: %v", c.pid, c.out.Err())
	}
	var rep simChildReply
	if err := json.Unmarshal(c.out.Bytes(), &rep); err != nil {
		return rep, err
	}
	if rep.Error != "" {
		return rep, fmt.Errorf("simulator process %d: %s", c.pid, rep.Error)
	}
	return rep, nil
}
