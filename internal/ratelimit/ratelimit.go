// Package ratelimit is a token bucket per key (a source address, or one
// key for a global limit), with the wait until the next attempt can pass.
package ratelimit

import (
	"math"
	"sync"
	"time"
)

// maxKeys bounds the buckets kept: beyond it, full buckets (keys that have
// not been seen for a while) are forgotten, so a flood from many addresses
// cannot grow the map without bound.
const maxKeys = 100000

// Buckets holds one token bucket per key.
type Buckets struct {
	rate  float64 // tokens per second
	burst float64
	mu    sync.Mutex
	m     map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// New returns buckets that refill at rate per second up to burst.
func New(rate float64, burst int) *Buckets {
	return &Buckets{rate: rate, burst: float64(burst), m: map[string]*bucket{}}
}

// Allow takes a token from key's bucket. When it is empty it takes none and
// returns how long until one is there.
func (l *Buckets) Allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.m) > maxKeys {
		for k, b := range l.m {
			if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
				delete(l.m, k)
			}
		}
	}
	b, ok := l.m[key]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.m[key] = b
	}
	if now.After(b.last) {
		b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens--
	return true, 0
}
