package mcp

// addResources registers the readable resources. The branch tree and
// branch descriptions arrive with the facade's branch methods.
func (s *Server) addResources() {}
