"""One module per page: each holds the page's data function (store -> plain dict, also served as JSON by
tunesafe.web.api) and its HTML route."""
