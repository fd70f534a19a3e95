// The API's own message for a refused action, announced to screen readers.

import { Alert } from '@mantine/core';

export function ErrorAlert({ error, title = 'Refused' }: { error: unknown; title?: string }) {
  if (!error) return null;
  const message = error instanceof Error ? error.message : String(error);
  return (
    <Alert color="red" title={title} role="alert" data-testid="error" variant="light">
      {message}
    </Alert>
  );
}
