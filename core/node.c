/* node: being written */
