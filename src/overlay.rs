//! compose.ccci.yml: the overlay ccci generates for every deploy.
