"""One completion's life: preparing the request (decode, validate, parse, render), choosing the
template, the owner that starts the response model and releases everything, sharing identical
requests, the emotion tag, the fallback line, and the record each request leaves behind."""
