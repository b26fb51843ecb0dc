// Command hello is the README's quick start: a service in a dozen lines.
package main

import (
	"context"
	"log"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/app"
)

type HelloRequest struct {
	Name string `json:"name"`
}

type HelloReply struct {
	Greeting string `json:"greeting"`
}

var Hello = switchboard.Endpoint[*HelloRequest, *HelloReply]("greeter", "hello")

func main() {
	svc := switchboard.NewService("greeter", "1.0.0")
	Hello.Handle(svc, func(ctx context.Context, req *HelloRequest) (*HelloReply, error) {
		return &HelloReply{Greeting: "Hello, " + req.Name}, nil
	})
	if err := app.Run(svc); err != nil { // finds the bus, runs until Ctrl-C
		log.Fatal(err)
	}
}
