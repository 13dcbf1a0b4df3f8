package castore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/wardcluster/ward/internal/store"
)

// claimPrefix holds which coordinator uses which coordinator id.
const claimPrefix = Prefix + "coordinators/"

// ClaimKey is the store key of coordinator id's claim.
func ClaimKey(id string) string { return claimPrefix + id }

// Claim records which coordinator (a data directory, named by a random
// instance id kept in it) uses a coordinator id, so that two coordinators
// never hold certificates for the same identity: on one machine they would
// otherwise both derive their id from the host name.
type Claim struct {
	Instance string    `json:"instance"`
	Host     string    `json:"host"`
	DataDir  string    `json:"data_dir"`
	Claimed  time.Time `json:"claimed"`
}

// IDTakenError says another coordinator already uses the id.
type IDTakenError struct {
	ID    string
	Owner Claim
}

func (e *IDTakenError) Error() string {
	return fmt.Sprintf("coordinator id %q is already used by another coordinator (host %s, data directory %s, since %s)",
		e.ID, e.Owner.Host, e.Owner.DataDir, e.Owner.Claimed.Format(time.RFC3339))
}

// ClaimID takes coordinator id for c.Instance, or confirms that it already
// holds it. Another instance's claim is an *IDTakenError.
func ClaimID(ctx context.Context, st store.Store, id string, c Claim) error {
	key := ClaimKey(id)
	for {
		rec, err := st.Get(ctx, key)
		switch {
		case err == nil:
			var have Claim
			if err := json.Unmarshal(rec.Value, &have); err != nil {
				return fmt.Errorf("store record %s does not decode: %w", key, err)
			}
			if have.Instance != c.Instance {
				return &IDTakenError{ID: id, Owner: have}
			}
			return nil
		case !errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("read %s: %w", key, err)
		}
		val, err := json.Marshal(c)
		if err != nil {
			return err
		}
		_, err = st.Txn(ctx, []store.Cond{store.Absent(key)}, []store.Op{store.Put(key, val)})
		if !store.IsConflict(err) {
			return err
		}
		// Someone claimed it meanwhile: read whose it is.
	}
}
