// Package packaging holds the test of Ward's .deb and .rpm: it builds them
// with build.sh, installs the .deb on this machine with dpkg, checks what
// it installed, and purges it, leaving the machine as it was.
package packaging

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runner runs commands as root: directly, or through sudo for a developer.
type runner struct {
	t    *testing.T
	sudo bool
}

func (r runner) cmd(name string, args ...string) *exec.Cmd {
	if r.sudo {
		return exec.Command("sudo", append([]string{"-n", name}, args...)...)
	}
	return exec.Command(name, args...)
}

// run runs a command and returns its stdout, stderr and exit code.
func (r runner) run(name string, args ...string) (string, string, int) {
	c := r.cmd(name, args...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		r.t.Fatalf("%s %v: %v", name, args, err)
	}
	return out.String(), errb.String(), c.ProcessState.ExitCode()
}

func (r runner) must(name string, args ...string) string {
	r.t.Helper()
	out, errOut, code := r.run(name, args...)
	if code != 0 {
		r.t.Fatalf("%s %s: exit %d\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// dpkg runs dpkg, waiting (up to 5 minutes) while another package
// operation on this shared machine holds dpkg's lock.
func (r runner) dpkg(args ...string) string {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		out, errOut, code := r.run("dpkg", args...)
		if code == 0 {
			return out
		}
		if strings.Contains(errOut, "lock") && time.Now().Before(deadline) {
			time.Sleep(2 * time.Second)
			continue
		}
		r.t.Fatalf("dpkg %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
}

// machineState is what the package touches outside its own files.
func machineState() map[string]bool {
	_, userErr := user.Lookup("ward")
	_, groupErr := user.LookupGroup("ward")
	_, etcErr := os.Stat("/etc/ward")
	_, varErr := os.Stat("/var/lib/ward")
	_, binErr := os.Stat("/usr/bin/ward")
	return map[string]bool{"user ward": userErr == nil, "group ward": groupErr == nil, "/etc/ward": etcErr == nil, "/var/lib/ward": varErr == nil, "/usr/bin/ward": binErr == nil}
}

func TestDebPackageInstallsAndPurgesCleanly(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg is not available on this machine: the .deb cannot be installed here")
	}
	r := runner{t: t}
	if os.Geteuid() != 0 {
		if err := exec.Command("sudo", "-n", "true").Run(); err != nil {
			t.Skip("installing a package needs root: run as root (CI does) or with passwordless sudo")
		}
		r.sudo = true
	}
	before := machineState()
	if _, _, code := r.run("dpkg-query", "-W", "ward"); code == 0 {
		t.Skip("a ward package is installed on this machine; this test installs and purges its own, so it leaves that one alone")
	}
	for what, present := range before {
		if present {
			t.Skipf("%s already exists on this machine; this test would change it", what)
		}
	}

	dist := t.TempDir()
	const version = "0.0.7"
	build := exec.Command("./build.sh")
	build.Env = append(os.Environ(), "OUT="+dist, "WARD_VERSION="+version)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dist, "ward_"+version+"-1_*.deb"))
	rpms, _ := filepath.Glob(filepath.Join(dist, "ward-"+version+"-1.*.rpm"))
	if len(debs) != 1 || len(rpms) != 1 {
		t.Fatalf("build.sh made debs %v and rpms %v", debs, rpms)
	}
	commit, _ := exec.Command("git", "rev-parse", "HEAD").Output()

	// Whatever happens below, leave the machine as it was.
	t.Cleanup(func() {
		r.run("dpkg", "--purge", "ward")
		r.run("rm", "-rf", "/var/lib/ward")
		if _, err := user.Lookup("ward"); err == nil {
			r.run("userdel", "ward")
		}
		if _, err := user.LookupGroup("ward"); err == nil {
			r.run("groupdel", "ward")
		}
		if after := machineState(); !equalState(after, before) {
			t.Errorf("the machine differs after the test: %v, was %v", after, before)
		}
	})

	r.dpkg("-i", debs[0])
	t.Run("binary", func(t *testing.T) { checkBinary(t, r, version, strings.TrimSpace(string(commit))) })
	t.Run("user and directories", func(t *testing.T) { checkUserAndDirs(t) })
	t.Run("config files", func(t *testing.T) { checkConfigs(t, r) })
	t.Run("systemd units", func(t *testing.T) { checkUnits(t, r) })
	t.Run("man pages and completion", func(t *testing.T) { checkDocs(t) })
	t.Run("coordinator starts as ward from the packaged config", func(t *testing.T) { runCoordinatorAsWard(t, r) })

	// The coordinator above created a cluster in /var/lib/ward: purge keeps
	// it, and the user owning it, and says so.
	out := r.dpkg("--purge", "ward")
	if !strings.Contains(out, "kept /var/lib/ward") {
		t.Errorf("purge over a cluster's data did not say it kept it:\n%s", out)
	}
	st := machineState()
	if st["/usr/bin/ward"] || st["/etc/ward"] || !st["/var/lib/ward"] || !st["user ward"] {
		t.Errorf("after purge over data: %v; want the package's files and /etc/ward gone, the data and its user kept", st)
	}
	if _, err := os.Stat("/usr/lib/systemd/system/ward-coordinator.service"); err == nil {
		t.Error("the coordinator unit is still installed after purge")
	}
	r.must("rm", "-rf", "/var/lib/ward")

	// With no cluster data, install and purge leave nothing behind.
	r.dpkg("-i", debs[0])
	r.dpkg("--purge", "ward")
	if st := machineState(); !equalState(st, before) {
		t.Errorf("install then purge left %v behind (before: %v)", st, before)
	}

	t.Run("rpm", func(t *testing.T) { checkRPM(t, rpms[0]) })
}

func equalState(a, b map[string]bool) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return len(a) == len(b)
}

func checkBinary(t *testing.T, r runner, version, commit string) {
	out, err := exec.Command("/usr/bin/ward", "version", "-o", "json").Output()
	if err != nil {
		t.Fatalf("ward version: %v", err)
	}
	var in struct {
		Version   string `json:"version"`
		Commit    string `json:"commit"`
		Date      string `json:"build_date"`
		GoVersion string `json:"go_version"`
	}
	json.Unmarshal(out, &in)
	if in.Version != version || in.Commit != commit || in.Date == "" || !strings.HasPrefix(in.GoVersion, "go1.") {
		t.Errorf("installed ward version -o json = %s; want version %s, commit %s", out, version, commit)
	}
	if line, _ := exec.Command("/usr/bin/ward", "--version").Output(); !strings.HasPrefix(string(line), "ward "+version+" (commit ") {
		t.Errorf("ward --version = %q", line)
	}
}

func checkUserAndDirs(t *testing.T) {
	u, err := user.Lookup("ward")
	if err != nil {
		t.Fatalf("no ward user: %v", err)
	}
	if uid, _ := strconv.Atoi(u.Uid); uid >= 1000 || uid == 0 {
		t.Errorf("ward's uid %s is not a system uid", u.Uid)
	}
	passwd, _ := os.ReadFile("/etc/passwd")
	if !regexp.MustCompile(`(?m)^ward:[^\n]*:/var/lib/ward:/usr/sbin/nologin$`).Match(passwd) {
		t.Errorf("ward's passwd entry has not home /var/lib/ward and shell nologin")
	}
	fi, err := os.Stat("/var/lib/ward")
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o700 || strconv.Itoa(int(st.Uid)) != u.Uid || strconv.Itoa(int(st.Gid)) != u.Gid {
		t.Errorf("/var/lib/ward: mode %o uid %d gid %d; want 0700 ward:ward", fi.Mode().Perm(), st.Uid, st.Gid)
	}
}

func checkConfigs(t *testing.T, r runner) {
	conffiles := r.must("dpkg-query", "-W", "-f", "${Conffiles}", "ward")
	for _, role := range []string{"coordinator", "agent"} {
		path := "/etc/ward/" + role + ".json"
		if !strings.Contains(conffiles, path) {
			t.Errorf("%s is not a conffile (an upgrade would overwrite the site's edits): %q", path, conffiles)
		}
		out, err := exec.Command("/usr/bin/ward", role, "--config", path, "--print-config", "-o", "json").CombinedOutput()
		if err != nil {
			t.Errorf("ward %s --config %s --print-config: %v\n%s", role, path, err, out)
			continue
		}
		var settings []struct {
			Key    string `json:"key"`
			Value  any    `json:"value"`
			Source string `json:"source"`
		}
		json.Unmarshal(out, &settings)
		for _, s := range settings {
			if s.Key == "data_dir" && (s.Value != "/var/lib/ward/"+role || s.Source != "file") {
				t.Errorf("%s: data_dir = %v from %s, want /var/lib/ward/%s from the file", path, s.Value, s.Source, role)
			}
		}
	}
}

func checkUnits(t *testing.T, r runner) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze is missing: test.sh installs Debian's systemd package")
	}
	for _, unit := range []string{"ward-coordinator.service", "ward-agent.service"} {
		path := "/usr/lib/systemd/system/" + unit
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"User=ward", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes",
			"ReadWritePaths=/var/lib/ward", "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure", "LimitNOFILE="} {
			if !strings.Contains(string(b), "\n"+want) {
				t.Errorf("%s lacks %s", unit, want)
			}
		}
		// verify exits 0 on unknown keys and bad values, and only warns:
		// any output is a failure.
		out, errOut, code := r.run("systemd-analyze", "verify", path)
		if code != 0 || strings.TrimSpace(out+errOut) != "" {
			t.Errorf("systemd-analyze verify %s: exit %d\n%s%s", unit, code, out, errOut)
		}
		out, errOut, code = r.run("systemd-analyze", "security", "--offline=true", path)
		m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindStringSubmatch(out)
		if code != 0 || m == nil {
			t.Errorf("systemd-analyze security %s: exit %d\n%s%s", unit, code, out, errOut)
			continue
		}
		// The agent's tasks need devices, JIT and namespaces, so it is
		// less confined than the coordinator.
		limit := map[string]float64{"ward-coordinator.service": 2.0, "ward-agent.service": 4.0}[unit]
		if score, _ := strconv.ParseFloat(m[1], 64); score > limit {
			t.Errorf("%s exposure %.1f is above %.1f: a hardening setting was lost\n%s", unit, score, limit, out)
		}
	}
	checkRunAsDropIn(t, r)
	if b, _ := os.ReadFile("/usr/lib/systemd/system/ward-coordinator.service"); !regexp.MustCompile(`\nLimitNOFILE=(\d{6,})`).Match(b) {
		t.Error("the coordinator's LimitNOFILE is below 100,000")
	}
}

// checkRunAsDropIn: the shipped run-as drop-in, applied to the agent unit
// as the README says, verifies clean, and makes root the unit's user with
// no capability beyond the three it needs (TestRunAsUser runs the agent
// with exactly the drop-in's set).
func checkRunAsDropIn(t *testing.T, r runner) {
	const example = "/usr/share/doc/ward/examples/ward-agent-run-as.conf"
	dropIn, err := os.ReadFile(example)
	if err != nil {
		t.Fatalf("the run-as drop-in is not installed: %v", err)
	}
	unit, err := os.ReadFile("/usr/lib/systemd/system/ward-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "ward-agent.service.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ward-agent.service"), unit, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ward-agent.service.d", "run-as.conf"), dropIn, 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := r.run("env", "SYSTEMD_UNIT_PATH="+dir+":", "systemd-analyze", "verify", "ward-agent.service")
	if code != 0 || strings.TrimSpace(out+errOut) != "" {
		t.Errorf("systemd-analyze verify ward-agent.service with %s: exit %d\n%s%s", example, code, out, errOut)
	}
	for _, want := range []string{"\nUser=root", "\nCapabilityBoundingSet=CAP_SETUID CAP_SETGID CAP_KILL\n"} {
		if !strings.Contains(string(dropIn), want) {
			t.Errorf("%s lacks %q", example, strings.TrimSpace(want))
		}
	}
}

func checkDocs(t *testing.T) {
	for _, page := range []string{"ward", "ward-coordinator", "ward-agent", "ward-version", "ward-docs-man"} {
		f, err := os.Open("/usr/share/man/man1/" + page + ".1.gz")
		if err != nil {
			t.Errorf("man page %s: %v", page, err)
			continue
		}
		zr, err := gzip.NewReader(f)
		var b []byte
		if err == nil {
			b, err = io.ReadAll(zr)
		}
		f.Close()
		if err != nil || !bytes.Contains(b, []byte(".TH \"WARD\" \"1\"")) {
			t.Errorf("man page %s is not a gzipped section-1 page: %v", page, err)
		}
	}
	bash, err := os.ReadFile("/usr/share/bash-completion/completions/ward")
	if err != nil || !bytes.Contains(bash, []byte("__start_ward")) {
		t.Errorf("bash completion: %v", err)
	} else if out, err := exec.Command("bash", "-n", "/usr/share/bash-completion/completions/ward").CombinedOutput(); err != nil {
		t.Errorf("bash completion does not parse: %v\n%s", err, out)
	}
	for path, marker := range map[string]string{
		"/usr/share/zsh/vendor-completions/_ward":        "#compdef ward",
		"/usr/share/fish/vendor_completions.d/ward.fish": "complete -c ward",
		"/usr/share/doc/ward/config.md":                  "# Configuration reference",
		"/usr/share/doc/ward/cli/ward_agent.md":          "## ward agent",
	} {
		if b, err := os.ReadFile(path); err != nil || !bytes.Contains(b, []byte(marker)) {
			t.Errorf("%s: missing or without %q (%v)", path, marker, err)
		}
	}
}

// runCoordinatorAsWard starts the packaged coordinator as the ward user with
// the packaged config (on loopback ports), as the unit would, and waits for
// it to create its CA in /var/lib/ward/coordinator.
func runCoordinatorAsWard(t *testing.T, r runner) {
	u, err := user.Lookup("ward")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"coordinator", "--config", "/etc/ward/coordinator.json",
		"--cluster-addr", "127.0.0.1:0", "--public-addr", "127.0.0.1:0", "--advertise", "127.0.0.1"}
	var c *exec.Cmd
	if r.sudo {
		c = exec.Command("sudo", append([]string{"-n", "-u", "ward", "/usr/bin/ward"}, args...)...) // sudo relays signals
	} else {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c = exec.Command("/usr/bin/ward", args...)
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	c.Dir = "/"
	dir := t.TempDir()
	stdout, stderr := filepath.Join(dir, "stdout"), filepath.Join(dir, "stderr")
	outF, _ := os.Create(stdout)
	errF, _ := os.Create(stderr)
	c.Stdout, c.Stderr = outF, errF
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait(); outF.Close(); errF.Close() }()
	stopped := false
	defer func() {
		if stopped {
			return
		}
		c.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			c.Process.Kill()
			<-done
			t.Error("the coordinator did not stop within 20s of SIGINT")
		}
	}()
	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(read(stdout), "export WARD_CONTEXT=/var/lib/ward/coordinator/") {
		select {
		case err := <-done:
			stopped = true
			t.Fatalf("the coordinator exited: %v\n%s", err, read(stderr))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the coordinator did not come up:\n%s", read(stderr))
		}
	}
	ctxPath := "/var/lib/ward/coordinator/admin.context"
	if mode := strings.TrimSpace(r.must("stat", "-c", "%a %U", ctxPath)); mode != "600 ward" {
		t.Errorf("%s: mode and owner %q, want 600 ward", ctxPath, mode)
	}
	r.must("/usr/bin/ward", "--context", ctxPath, "node", "ls")
}

func checkRPM(t *testing.T, path string) {
	if _, err := exec.LookPath("rpm"); err != nil {
		t.Skip("rpm is not installed: the .rpm was built but its contents are not checked")
	}
	out, err := exec.Command("rpm", "-qp", "--queryformat", "[%{FILEMODES:perms} %{FILENAMES}\n]", path).CombinedOutput()
	if err != nil {
		t.Fatalf("rpm -qp %s: %v\n%s", path, err, out)
	}
	for _, want := range []string{"-rwxr-xr-x /usr/bin/ward", "/usr/lib/systemd/system/ward-agent.service", "/usr/share/zsh/site-functions/_ward", "/etc/ward/coordinator.json"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the rpm lacks %q:\n%s", want, out)
		}
	}
	scripts, _ := exec.Command("rpm", "-qp", "--scripts", path).CombinedOutput()
	if !strings.Contains(string(scripts), "useradd --system") {
		t.Errorf("the rpm does not create the ward user:\n%s", scripts)
	}
}
