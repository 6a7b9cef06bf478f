module tong.dev/tong

go 1.19
