/* graph: being written */
