print("kernel bench placeholder")
