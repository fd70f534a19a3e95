// The shell: login gate, navigation, the lost-connection banner, and the page of the current route.

import { Alert, AppShell, Burger, Button, Group, NavLink, Text } from '@mantine/core';
import { useDisclosure } from '@mantine/hooks';
import { useEffect } from 'react';
import { clearToken, tokenWasRefused, useConnection, useToken } from './api/index.js';
import { BackingImageDetail, BackingImages, Login, Nodes, Settings, VolumeDetail, Volumes } from './pages/index.js';
import { href, useRoute, type Route } from './route.js';

function Page({ route }: { route: Route }) {
  switch (route.page) {
    case 'backingimage':
      return <BackingImageDetail name={route.name} />;
    case 'volumes':
      return <Volumes />;
    case 'volume':
      return <VolumeDetail name={route.name} />;
    case 'nodes':
      return <Nodes />;
    case 'settings':
      return <Settings />;
    default:
      return <BackingImages />;
  }
}

function ConnectionBanner() {
  const { state, error } = useConnection();
  if (state === 'ok') return null;
  return (
    <Alert color="orange" title="Connection to the manager lost" role="alert" data-testid="connection-lost" mb="md">
      Reconnecting… ({error}). What you see may be out of date until the connection is back.
    </Alert>
  );
}

export function App() {
  // After the first commit (not when render was merely scheduled): what `npm run bench -- ui` reads.
  useEffect(() => {
    if (performance.getEntriesByName('stratum:first-render').length === 0) performance.mark('stratum:first-render');
  }, []);
  const token = useToken();
  const route = useRoute();
  const [opened, { toggle }] = useDisclosure();
  if (!token) return <Login expired={tokenWasRefused()} />;
  const active = (p: Route['page'][]) => p.includes(route.page);
  return (
    <AppShell header={{ height: 56 }} navbar={{ width: 220, breakpoint: 'sm', collapsed: { mobile: !opened } }} padding="md">
      <AppShell.Header>
        <Group h="100%" px="md" justify="space-between">
          <Group>
            <Burger opened={opened} onClick={toggle} hiddenFrom="sm" size="sm" aria-label="Toggle navigation" />
            <Text fw={700} size="lg">Stratum</Text>
          </Group>
          <Button variant="subtle" onClick={() => clearToken()}>Log out</Button>
        </Group>
      </AppShell.Header>
      <AppShell.Navbar p="xs" component="nav" aria-label="main">
        <NavLink href={href.backingImages} label="Backing images" active={active(['backingimages', 'backingimage'])} />
        <NavLink href={href.volumes} label="Volumes" active={active(['volumes', 'volume'])} />
        <NavLink href={href.nodes} label="Nodes and disks" active={active(['nodes'])} />
        <NavLink href={href.settings} label="Settings" active={active(['settings'])} />
      </AppShell.Navbar>
      <AppShell.Main>
        <ConnectionBanner />
        <Page route={route} />
      </AppShell.Main>
    </AppShell>
  );
}
