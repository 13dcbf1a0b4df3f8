package api

import "time"

// Maintenance is the cluster's maintenance mode (GET and POST
// /v1/cluster/maintenance, and in Status). While On, submissions from users
// who are not admins are refused with CodeMaintenance and Message; queued
// and running jobs go on.
type Maintenance struct {
	On      bool      `json:"on"`
	Message string    `json:"message,omitempty"`
	Since   time.Time `json:"since,omitzero"`
	By      string    `json:"by,omitempty"` // the admin who turned it on
}

// MaintenanceRequest turns maintenance mode on (with the message users are
// shown) or off.
type MaintenanceRequest struct {
	On      bool   `json:"on"`
	Message string `json:"message,omitempty"`
}

// MaxMaintenanceMessage bounds the maintenance message, in bytes.
const MaxMaintenanceMessage = 1000
