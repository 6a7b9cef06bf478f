module tong.dev/examples/run

go 1.19

require tong.dev/tong v0.0.0

replace tong.dev/tong => ../../bindings/go
