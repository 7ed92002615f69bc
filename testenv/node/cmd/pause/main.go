// Command pause is the testenv node's sandbox image: the process that holds a
// pod's namespaces. There is no registry to pull the usual pause image from,
// so the node builds this one. It waits for SIGTERM or SIGINT and exits 0.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
}
