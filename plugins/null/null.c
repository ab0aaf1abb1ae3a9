/* null: being written */
