module modhost.local/guest

go 1.24
