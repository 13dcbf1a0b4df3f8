package enroll

import "time"

// SetConnectTimeout shortens the per-address connect timeout for a test;
// the returned func restores it.
func SetConnectTimeout(d time.Duration) (restore func()) {
	old := connectTimeout
	connectTimeout = d
	return func() { connectTimeout = old }
}
