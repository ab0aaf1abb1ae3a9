/* runtime: being written */
