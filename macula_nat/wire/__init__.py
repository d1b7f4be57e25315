"""Sans-IO wire codecs: pure parse and build functions, no sockets and no clocks."""
