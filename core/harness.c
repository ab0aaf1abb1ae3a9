/* harness: being written */
