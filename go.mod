module github.com/heed-go/heed

go 1.26

require go.uber.org/goleak v1.3.0 // indirect
