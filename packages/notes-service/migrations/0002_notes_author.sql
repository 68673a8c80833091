-- Who wrote a note: the token's subject.
alter table notes add column author text not null default '';
