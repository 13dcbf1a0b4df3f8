package config

//go:generate go run ./configdoc/gen -src . -o ../../docs/config.md
