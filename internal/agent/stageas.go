package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/wardcluster/ward/internal/runas"
	"github.com/wardcluster/ward/internal/staging"
)

// An agent with --run-as-user runs as root, but a job's files belong to the
// task's account, and the agent must create and read them with that
// account's rights, never root's: a submitter could otherwise name a --dir,
// or leave a symbolic link in one, that leads root to write or read any file
// on the node. So the agent moves and verifies the bytes in a directory of
// its own, and a short-lived helper, this executable's hidden StageCommand
// started with the account's credential, makes, lists and reads the files
// in the working directory: the kernel checks each access as the account's.

// StageCommand is the hidden subcommand that runs RunStageHelper.
const StageCommand = "agent-stage"

// stageVerb is what one helper run does.
type stageVerb string

const (
	// stagePut DIR REL MODE: write standard input to DIR/REL (through a
	// temporary file in its directory, renamed once complete) with MODE,
	// making the directories on the way.
	stagePut stageVerb = "put"
	// stageMatch DIR GLOB...: print the regular files in DIR that the
	// output patterns match (staging.MatchOutputs), each followed by NUL.
	stageMatch stageVerb = "match"
	// stageGet DIR REL: copy the regular file DIR/REL to standard output.
	stageGet stageVerb = "get"
)

// RunStageHelper is `ward agent-stage VERB ARGS...`, run by the agent as a
// task's account; see StageCommand.
func RunStageHelper(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) < 2 {
		return errors.New("usage: ward " + StageCommand + " put DIR REL MODE | match DIR GLOB... | get DIR REL (run by the agent, not by hand)")
	}
	verb, dir := stageVerb(args[0]), args[1]
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("working directory %q is not absolute", dir)
	}
	switch {
	case verb == stagePut && len(args) == 4:
		rel, err := staging.CleanRemote(args[2])
		if err != nil {
			return err
		}
		mode, err := strconv.ParseUint(args[3], 8, 32)
		if err != nil || mode&^0o777 != 0 {
			return fmt.Errorf("mode %q is not an octal permission", args[3])
		}
		return putFile(filepath.Join(dir, filepath.FromSlash(rel)), stdin, os.FileMode(mode))
	case verb == stageMatch && len(args) >= 3:
		files, err := staging.MatchOutputs(dir, args[2:])
		if err != nil {
			return err
		}
		for _, f := range files {
			if _, err := io.WriteString(stdout, f+"\x00"); err != nil {
				return err
			}
		}
		return nil
	case verb == stageGet && len(args) == 3:
		rel, err := staging.CleanRemote(args[2])
		if err != nil {
			return err
		}
		f, err := os.Open(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return err
		}
		defer f.Close()
		if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", rel)
		}
		_, err = io.Copy(stdout, f)
		return err
	}
	return fmt.Errorf("%s %q with %d arguments is not a staging step", StageCommand, verb, len(args)-1)
}

// putFile writes r to dst through a temporary file in its directory, so
// dst is either absent or complete.
func putFile(dst string, r io.Reader, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(dst), ".ward-input-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), mode)
	}
	if err == nil {
		err = os.Rename(f.Name(), dst)
	}
	return err
}

// stageAs runs one helper step as acct, with stdin and stdout; its error
// names the account and says what the helper said.
func stageAs(acct runas.Account, stdin io.Reader, stdout io.Writer, verb stageVerb, args ...string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this executable to stage files as %s: %w", acct.Name, err)
	}
	cmd := exec.Command(exe, append([]string{StageCommand, string(verb)}, args...)...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + acct.Home, "USER=" + acct.Name, "LOGNAME=" + acct.Name}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: acct.Credential(), Pdeathsig: syscall.SIGKILL}
	cmd.Stdin, cmd.Stdout = stdin, stdout
	var errb bytes.Buffer
	cmd.Stderr = &limitedBuffer{b: &errb, max: 4 << 10}
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("as %s: %s", acct.Name, msg)
	}
	return nil
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// runAsWorkRoot holds the scratch directories of an agent whose tasks run
// as their submitters: outside the data directory (which holds the agent's
// key and stays 0700), traversable but not listable (0711), each attempt's
// directory 0700 and owned by the task's account.
func (a *Agent) runAsWorkRoot() string {
	return filepath.Join(os.TempDir(), "ward-work-"+a.state.Node)
}

// makeScratchAs makes an attempt's scratch directory owned by acct.
func (a *Agent) makeScratchAs(dir string, acct runas.Account) error {
	root := filepath.Dir(dir)
	if err := os.MkdirAll(root, 0o711); err != nil {
		return err
	}
	// The root must be the agent's own, whatever was there before.
	if fi, err := os.Lstat(root); err != nil || !fi.IsDir() || fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Geteuid()) {
		return fmt.Errorf("%s is not a directory of the agent's own; remove it", root)
	}
	if err := os.Chmod(root, 0o711); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	return os.Chown(dir, int(acct.UID), int(acct.GID))
}
