package main

import "context"


func runDispatchExec(ctx context.Context, r *Result) error { return nil }
func runScale(ctx context.Context, r *Result) error        { return nil }
