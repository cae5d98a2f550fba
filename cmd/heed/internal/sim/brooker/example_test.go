package brooker_test

import (
	"fmt"
	"os"

	"github.com/heed-go/heed/cmd/heed/internal/sim/brooker"
)

func ExampleRun() {
	ps, err := brooker.Run(brooker.Config{
		N:          10,
		Runs:       20,
		Strategies: []brooker.Strategy{brooker.Exponential, brooker.FullJitter},
		Seed:       1,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	brooker.WriteCSV(os.Stdout, ps)
	// Output:
	// clients,time,calls,Algorithm
	// 10,3673,51,Exponential
	// 10,495,38,FullJitter
}
