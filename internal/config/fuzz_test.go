package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadConfigFiles feeds arbitrary bytes to every config file loader
// (coordinator, agent, CLI context). Each either loads or returns an error;
// a file that loads also goes through its validation. Nothing may panic,
// and an error must name the file.
func FuzzLoadConfigFiles(f *testing.F) {
	f.Add(uint8(0), []byte(`{"version":1,"data_dir":"/tmp/c","cluster_addr":":7443","limits_max_job_bytes":1}`))
	f.Add(uint8(0), []byte(`{"version":1,"store":"etcd://127.0.0.1:2379/p","etcd_ca":"a","etcd_cert":"b","etcd_key":"c","heartbeat_interval":"5s"}`))
	f.Add(uint8(1), []byte(`{"version":1,"data_dir":"/tmp/a","name":"n","slots":4,"labels":{"k":"v"},"coordinators":["h:7443"]}`))
	f.Add(uint8(2), []byte(`{"server":"127.0.0.1:7443","public":"127.0.0.1:8443","cert_pem":"x","key_pem":"y","bundle_pem":"z"}`))
	f.Add(uint8(0), []byte(`{"version":1,"unknown":1}`))
	f.Add(uint8(1), []byte("{\"version\":1}\n{}"))
	f.Add(uint8(2), []byte("\xef\xbb\xbf{"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		path := filepath.Join(dir, "fuzz.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		var err error
		switch kind % 3 {
		case 0:
			var c Coordinator
			if c, err = LoadCoordinator(path); err == nil {
				_ = c.Validate()
			}
		case 1:
			var a Agent
			if a, err = LoadAgent(path); err == nil {
				_ = a.Validate()
			}
		case 2:
			_, err = LoadContext(path)
		}
		if err != nil && err.Error() == "" {
			t.Fatal("an empty error")
		}
	})
}
