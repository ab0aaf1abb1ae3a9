/* csv: being written */
