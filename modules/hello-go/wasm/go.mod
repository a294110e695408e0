module hello-go

go 1.24

require modhost.local/guest v0.0.0

replace modhost.local/guest => ../../go-sdk
