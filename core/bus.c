/* bus: being written */
