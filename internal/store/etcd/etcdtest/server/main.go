// Command server runs one etcd member from go.etcd.io/etcd/server/v3/embed,
// for Ward's tests and benchmarks: the real etcd server code, in its own
// process, with its own data directory and fsync on. It lives in a nested
// Go module so that Ward's own go.mod never carries the etcd server's
// dependencies; internal/store/etcd/etcdtest builds and starts it.
//
// It prints one line "ready CLIENT_URL" on stdout once it serves clients,
// then runs until SIGTERM or SIGINT.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	dataDir := flag.String("data", "", "data directory (required)")
	client := flag.String("client-addr", "127.0.0.1:0", "client listener HOST:PORT (port 0 picks one)")
	peer := flag.String("peer-addr", "127.0.0.1:0", "peer listener HOST:PORT (port 0 picks one)")
	cert := flag.String("cert", "", "server certificate chain (PEM); empty serves plaintext")
	key := flag.String("key", "", "server key (PEM)")
	ca := flag.String("ca", "", "CA bundle that client certificates must chain to (required with -cert)")
	maxTxnOps := flag.Uint("max-txn-ops", embed.DefaultMaxTxnOps, "etcd --max-txn-ops")
	maxReq := flag.Uint("max-request-bytes", uint(embed.DefaultMaxRequestBytes), "etcd --max-request-bytes")
	logLevel := flag.String("log-level", "warn", "etcd log level")
	flag.Parse()
	if *dataDir == "" {
		log.Fatal("-data is required")
	}

	cfg := embed.NewConfig()
	cfg.Name = "ward-test"
	cfg.Dir = *dataDir
	cfg.LogLevel = *logLevel
	cfg.MaxTxnOps = *maxTxnOps
	cfg.MaxRequestBytes = *maxReq
	scheme := "http"
	if *cert != "" {
		if *key == "" || *ca == "" {
			log.Fatal("-cert needs -key and -ca")
		}
		scheme = "https"
		cfg.ClientTLSInfo.CertFile = *cert
		cfg.ClientTLSInfo.KeyFile = *key
		cfg.ClientTLSInfo.TrustedCAFile = *ca
		cfg.ClientTLSInfo.ClientCertAuth = true
	}
	cu := url.URL{Scheme: scheme, Host: *client}
	pu := url.URL{Scheme: "http", Host: *peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatalf("start etcd: %v", err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		log.Fatal("etcd did not become ready within 60s")
	}
	fmt.Printf("ready %s://%s\n", scheme, e.Clients[0].Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-sig:
		log.Printf("stopping on %v", s)
	case err := <-e.Err():
		log.Fatalf("etcd: %v", err)
	}
}
