// Parses Kubernetes resource URLs into (group, version, namespace, plural, name, subresource):
//   /api/v1[/namespaces/{ns}]/{plural}[/{name}[/{subresource}]]
//   /apis/{group}/{version}[/namespaces/{ns}]/{plural}[/{name}[/{subresource}]]

export interface ResourcePath {
  group: string;
  version: string;
  namespace: string;
  plural: string;
  name: string;
  subresource: string;
}

export function parseResourcePath(pathname: string): ResourcePath | undefined {
  const parts = pathname.split('/').filter((p) => p !== '').map(decodeURIComponent);
  let group: string;
  let version: string;
  let rest: string[];
  if (parts[0] === 'api' && parts.length >= 3) {
    group = '';
    version = parts[1] as string;
    rest = parts.slice(2);
  } else if (parts[0] === 'apis' && parts.length >= 4) {
    group = parts[1] as string;
    version = parts[2] as string;
    rest = parts.slice(3);
  } else {
    return undefined;
  }
  let namespace = '';
  // `namespaces/{ns}/{plural}...` is a namespaced resource; `namespaces[/{ns}]` alone is the Namespace kind.
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1] as string;
    rest = rest.slice(2);
  }
  if (rest.length === 0 || rest.length > 3) return undefined;
  return { group, version, namespace, plural: rest[0] as string, name: rest[1] ?? '', subresource: rest[2] ?? '' };
}
